/*
 * server.h - the local socket protocol: what the rest of the daemon calls.
 *
 * Owns: nothing of its own; conn.c holds the socket, the connections, their
 * credentials and limits, server.c parses each request, makes the access
 * decision (access.h) and answers it, status.c builds the STATUS document.
 *
 * DESIGN: requests are read and answered on the loop thread. One that must
 * wait (a check as the caller, a fetch, a validation, a listing on a worker)
 * holds a reference on its connection; a connection closed meanwhile lives on
 * until the last such reference is dropped, and its replies are discarded. A
 * malformed request is answered with an error and the connection goes on.
 */
#ifndef GRANARY_SERVER_H
#define GRANARY_SERVER_H

#include "granaryd.h"

/* Bind and listen on cfg->socket. Returns 0 or -errno with a log line. */
int server_start(struct granaryd *d);

/* Stop accepting; existing connections go on. */
void server_stop_listening(struct granaryd *d);

/* Close every connection and free the server (after the loop has ended). */
void server_destroy(struct granaryd *d);

/* Connections open now. */
unsigned server_connections(const struct granaryd *d);

#endif
