"""The tenant directory: the JSON import format and applying it to the database."""
