"""cardtune.curate.sources"""
