"""MCR inputs from stored records: incremental aggregation, the indicative score, the report
and the peaq export. Reads the store (and its SQL tables); never imports ingest or MQTT.
"""
