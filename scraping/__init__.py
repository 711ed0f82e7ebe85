"""Scraping: configured web sources fetched on schedule through one SSRF-safe fetcher, their
changes reviewed in the admin. Being built (issue 11): so far the gate's address rule."""
