// The console's service worker: shows the appliance's alerts (Web Push) and opens the event when tapped.
// It has no fetch handler on purpose: console pages are private and never cached.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let alert = {};
  try {
    alert = event.data ? event.data.json() : {};
  } catch (error) {
    alert = { body: event.data ? event.data.text() : "" };
  }
  const title = alert.title || self.location.host;
  const options = {
    body: alert.body || "",
    tag: alert.tag || undefined,
    // A follow-up of the same event (its clip) replaces the notification and still alerts.
    renotify: Boolean(alert.tag),
    // The event's snapshot from the console (same origin: the browser sends the session cookie with it).
    image: alert.image || undefined,
    icon: "/static/icon.svg",
    badge: "/static/icon.svg",
    timestamp: alert.time ? Date.parse(alert.time) : Date.now(),
    data: { url: alert.url || "/" },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(event.notification.data.url || "/", self.location.origin);
  if (target.protocol !== "https:" && target.protocol !== "http:") {
    return;
  }
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => w.url === target.href);
      return open ? open.focus() : self.clients.openWindow(target.href);
    }),
  );
});
