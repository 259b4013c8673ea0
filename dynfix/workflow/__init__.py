"""The whole flow on one call (``dynfix flow``): the API's stages chained (:mod:`.run`), with
reports (:mod:`.report`) and plots (:mod:`.plots`). :mod:`.options` holds its options alone,
so the CLI reads the defaults without loading the API."""
