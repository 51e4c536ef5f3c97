"""cardtune.curate.reporting"""
