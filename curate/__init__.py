"""cardtune.curate"""
