from gradcheck_cli.cli import app

app(prog_name="gradcheck")
