"""What crosses the wire between the coordinator, runners and the ingress, shared by both ends.

`messages` (coordinator <-> runner headers, checked on receipt), `auth` (the join handshake),
`ticket` (the join ticket and the coordinator's identity), `stage` (the frames a runner's stage
accepts and sends). Neither engine.coordinator nor engine.runner is imported from here: both import it.
"""
