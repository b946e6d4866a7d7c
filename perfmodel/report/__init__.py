"""``perfmodel report``: measured next to predicted, as a self-contained folder."""
