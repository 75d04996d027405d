"""Layers in the style of "Neural Networks from Scratch": each class makes its own weights from
sizes, forward() stores self.output and returns nothing, backward() stores self.dinputs (and
self.dweights, self.dbiases)."""

import numpy as np


class Layer_Dense:
    def __init__(self, n_inputs, n_neurons):
        self.weights = 0.01 * np.random.randn(n_inputs, n_neurons)
        self.biases = np.zeros((1, n_neurons))

    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.dot(inputs, self.weights) + self.biases

    def backward(self, dvalues):
        # Gradients on the parameters
        self.dweights = np.dot(self.inputs.T, dvalues)
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        # Gradient on the values
        self.dinputs = np.dot(dvalues, self.weights.T)


class Loss:
    def calculate(self, output, y):
        sample_losses = self.forward(output, y)
        return np.mean(sample_losses)


class Loss_MeanAbsoluteError(Loss):
    def forward(self, y_pred, y_true):
        return np.mean(np.abs(y_true - y_pred), axis=-1)

    def backward(self, dvalues, y_true):
        samples = len(dvalues)
        outputs = len(dvalues[0])
        # d|y_pred - y_true| / d y_pred is the sign of (y_pred - y_true)
        self.dinputs = np.sign(dvalues - y_true) / outputs
        self.dinputs = self.dinputs / samples
