"""A network in the style of "Make Your Own Neural Network": one train() runs the forward pass,
the backward pass and the weight update in place. Inputs and targets are single examples."""

import numpy


def sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-x))


class NeuralNetwork:
    def __init__(self, inputnodes, hiddennodes, outputnodes, learningrate):
        self.inodes, self.hnodes, self.onodes = inputnodes, hiddennodes, outputnodes
        # weights from input to hidden (wih) and from hidden to output (who)
        self.wih = numpy.random.normal(0.0, pow(self.inodes, -0.5), (self.hnodes, self.inodes))
        self.who = numpy.random.normal(0.0, pow(self.hnodes, -0.5), (self.onodes, self.hnodes))
        self.lr = learningrate

    def train(self, inputs_list, targets_list):
        inputs = numpy.array(inputs_list, ndmin=2).T
        targets = numpy.array(targets_list, ndmin=2).T
        hidden_outputs = sigmoid(numpy.dot(self.wih, inputs))
        final_outputs = sigmoid(numpy.dot(self.who, hidden_outputs))
        # the error at the output, and through the output sigmoid's slope
        output_errors = targets - final_outputs
        output_deltas = output_errors * final_outputs * (1.0 - final_outputs)
        # the hidden layer's share of the error (before who changes)
        hidden_errors = numpy.dot(self.who.T, output_deltas)
        hidden_deltas = hidden_errors * hidden_outputs * (1.0 - hidden_outputs)
        self.who += self.lr * numpy.dot(output_deltas, numpy.transpose(hidden_outputs))
        self.wih += self.lr * numpy.dot(hidden_deltas, numpy.transpose(inputs))
