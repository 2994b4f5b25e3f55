"""Twisted's side of serving: the per-connection base, one protocol class per wire format,
service assembly from endpoint descriptions, the ``twistd`` options, the transport and reactor."""
