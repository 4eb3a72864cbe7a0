"""Links to the servers a supervisor can serve: one interface (:mod:`.base`), one
implementation per protocol, chosen once at startup (:mod:`.select`)."""
