"""HTTP plumbing apart from measurement: where requests go (:mod:`.target`), HTTP/1.1 framing of the
measured stream (:mod:`.framing`) and plain, unmeasured requests through ``requests`` (:mod:`.plain`).

The measured streaming call itself, which owns the socket and its timestamps, is :mod:`tokenswarm.client`.
"""
