"""xprnn"""
