"""cardtune.curate.card"""
