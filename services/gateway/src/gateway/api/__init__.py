"""HTTP routes, one module per resource; handlers live one level up."""
