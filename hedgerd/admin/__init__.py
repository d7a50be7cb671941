"""The admin side: the HTTP server (:mod:`.server`), its request bodies (:mod:`.input`), what
makes a token weak (:mod:`.token`), and the ``hedgerd status/kill/resume`` client
(:mod:`.control`, :mod:`.status_view`).

Nothing is imported here: the config imports :mod:`.token`, and the server and the client
import the config.
"""
