"""``python -m archsmith`` runs the command line."""

from archsmith.cli import main

main()
