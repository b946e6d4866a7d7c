"""One module per section of the report; each returns its Section(s) (missing ones say why)."""
