// A server that refuses a connection only for now says so: its reason starts with
// "unavailable" (its database is not answering). Socket.IO does not retry a refusal.
const UNAVAILABLE_RETRY_MS = 3000;

/** After `connect_error`: true when the refusal is only for now, and a new attempt is
 *  scheduled; false for any other error (retried by Socket.IO or final). */
export function retryIfUnavailable(socket, err) {
  if (socket.active || !err.message.startsWith("unavailable")) return false;
  setTimeout(() => { if (!socket.connected) socket.connect(); }, UNAVAILABLE_RETRY_MS);
  return true;
}
