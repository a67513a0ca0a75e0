"""Catalogue work: tagging a folder of photos, an embedding index of similar products, the label audit and its page."""
