from dermsight.cli import app

app(prog_name="dermsight")
