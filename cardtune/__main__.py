"""``python -m cardtune`` (also what ``accelerate launch -m cardtune tune CARD`` runs)."""

from cardtune.cli import main

if __name__ == "__main__":
    main()
