"""Reading mail: bytes in, a parsed, immutable message out."""
