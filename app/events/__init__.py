"""What viewers did with the lists the service answered: the event log (`POST /v1/events`)."""
