"""A team's own jobs, scheduled like the product's: the README's example of EXTRA_APPS."""
