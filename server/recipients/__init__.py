"""Recipients (GDPR 19): changes told to every system the controller discloses consent data to.

- `registry`: recipients registered by the operator (`python -m server recipients add NAME URL`).
- `outbox`: the notices, queued in the transaction of the change they tell.
- `dispatcher`: sends them as signed JWTs, retries with backoff, keeps each acknowledgement as proof.
"""
