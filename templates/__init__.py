"""cardtune.templates"""
