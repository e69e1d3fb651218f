"""The built-in ``sqlite`` store: schema and migrations, the store, the queries it shares
with the read-only reader of the command line."""
