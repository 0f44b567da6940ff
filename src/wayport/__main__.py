"""``python -m wayport``: the same as the ``wayport`` command."""

from wayport.cli.main import app

if __name__ == "__main__":
    app(prog_name="wayport")
