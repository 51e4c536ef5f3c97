"""cardtune.curate.templating"""
