"""The application's side of the enclave: what it is given and how it is started.

`envfile` parses the `.env` whose values become encrypted secrets, `shellquote` writes them
back as `export NAME='value'` lines for the boot script, and `procfile` checks the Procfile and
Containerfile that start the application (cli.md §6, §8; enclave.md §5).
"""
