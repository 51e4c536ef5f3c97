"""cardtune.curate.store"""
