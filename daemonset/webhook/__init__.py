"""The mutating admission webhook that adds shardcache datasets to opted-in pods.

`mutate` is the pure decision (pod -> JSON patch), `review` turns an AdmissionReview into its
answer, `server` is the thin aiohttp/TLS shell and `main` the command line.
"""
