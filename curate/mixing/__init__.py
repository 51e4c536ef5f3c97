"""cardtune.curate.mixing"""
