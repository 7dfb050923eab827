"""Review by ear: `fishflow browse` and the marks it leaves for the next run."""
