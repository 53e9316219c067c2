// Reconnecting where Socket.IO does not by itself.
// - A refusal that is only for now says so: its reason starts with "unavailable" (the
//   server's database is not answering). Socket.IO does not retry a refusal.
// - A connection the server closed ("io server disconnect") is not retried either. The
//   server closes the sockets of a login session that ended: a logout, a deactivation, or
//   a password change, which ends every session, this browser's too, and gives this tab's
//   cookie a new one. Connecting once more tells which: a new session is let in (and the
//   page resubscribes from its cursor), an ended one is refused.
const UNAVAILABLE_RETRY_MS = 3000;
const SERVER_CLOSE_RETRY_MS = 1000;
const SERVER_CLOSE_RETRY_EVERY_MS = 10000;  // at most one such attempt in this time

/** After `connect_error`: true when the refusal is only for now, and a new attempt is
 *  scheduled; false for any other error (retried by Socket.IO or final). */
export function retryIfUnavailable(socket, err) {
  if (socket.active || !err.message.startsWith("unavailable")) return false;
  setTimeout(() => { if (!socket.connected) socket.connect(); }, UNAVAILABLE_RETRY_MS);
  return true;
}

/** Have `socket` connect once more after the server closes it (see above); returns a
 *  function for its `disconnect` event: true when an attempt is scheduled. */
export function retryAfterServerClose(socket) {
  let triedAt = -Infinity;
  return (reason) => {
    if (reason !== "io server disconnect" || Date.now() - triedAt < SERVER_CLOSE_RETRY_EVERY_MS) {
      return false;
    }
    triedAt = Date.now();
    setTimeout(() => { if (!socket.connected) socket.connect(); }, SERVER_CLOSE_RETRY_MS);
    return true;
  };
}
