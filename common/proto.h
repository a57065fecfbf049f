/*
 * proto - the vocabulary of Postern's internal protocols, spelled once:
 * service (socket) names, protocol names and versions, attribute names,
 * and trigger letters.  doc/ipc.md describes each exchange.
 */
#ifndef POSTERN_PROTO_H
#define POSTERN_PROTO_H

/* Service sockets, relative to queue_directory. */
#define SVC_PRIVATE_DIR "private"
#define SVC_PUBLIC_DIR  "public"
#define SVC_CLEANUP     "cleanup"
#define SVC_QMGR        "qmgr"
#define SVC_LOCAL       "local"
#define SVC_SMTP        "smtp"
#define SVC_AUTH        "auth"
#define SVC_PICKUP      "pickup"
#define SVC_SHOWQ       "showq"
#define SVC_POP3D_MAILBOX "pop3d-mailbox" /* pop3d's mailbox part (doc/ipc.md 8.6) */

/* Common attribute names. */
#define ATTR_PROTOCOL "protocol"
#define ATTR_VERSION  "version"
#define ATTR_STATUS   "status"
#define ATTR_REASON   "reason"
#define ATTR_QUEUE_ID "queue_id"

/*
 * Trigger requests: one byte written to a trigger service's socket
 * (qmgr, pickup), no reply.  Duplicates may be collapsed by the receiver.
 */
#define TRIGGER_WAKEUP        'W' /* periodic wakeup from master */
#define TRIGGER_SCAN_INCOMING 'I' /* new mail in incoming/ */
#define TRIGGER_SCAN_DEFERRED 'D' /* scan deferred/ now */
#define TRIGGER_FLUSH         'F' /* deliver all deferred mail now */

#endif
