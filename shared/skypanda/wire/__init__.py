"""What the server and the pilot share, standard library only: error codes, the record of
a pilot's payload process groups, and the structured log format (`logs`). The pilot imports
nothing else from skypanda (it ships as a single-file zipapp), and the server imports nothing
of the pilot's."""
