"""What `manage.py pipeline` (`make run`) runs in one process: a PostgreSQL server from a wheel, a worker and a web server."""
