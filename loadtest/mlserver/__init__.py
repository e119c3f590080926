"""MLServer 1.7.1 as a peer in `make bench`: the same bundle behind MLServer's runtime API, in its own venv."""
