"""A virtual fleet running the real agent code, the adversary that attacks it, and the demo.
Imports pi (paho transport), records (keys), runners, and the gateway (store, report, topics).
"""
