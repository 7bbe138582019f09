"""Matching: small pure steps that find where a message belongs, each recording its evidence."""
