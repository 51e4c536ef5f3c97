"""cardtune.train"""
