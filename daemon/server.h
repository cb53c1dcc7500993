/*
 * server.h - the local socket: connections, requests, replies.
 *
 * Owns: the listening AF_UNIX SOCK_SEQPACKET socket, every client connection,
 * its credentials (SO_PEERCRED), its queue of replies not yet sent, and the
 * handling of each request type of client/proto.h.
 *
 * DESIGN: requests are read and answered on the loop thread. One that must
 * wait (a fetch, a validation, a listing on a worker) holds a reference on its
 * connection; a connection closed meanwhile lives on until the last such
 * reference is dropped, and its replies are discarded. A malformed request is
 * answered with an error and the connection goes on.
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
