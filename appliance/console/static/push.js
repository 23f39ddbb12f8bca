// "Push on this phone": subscribe this browser to the appliance's alerts (see alerts/push_console.py).
// Texts come from the page's data- attributes, so they are in the page's language.
(function () {
  "use strict";
  const root = document.getElementById("push");
  if (!root) {
    return;
  }
  const status = document.getElementById("push-status");
  const onButton = document.getElementById("push-on");
  const offButton = document.getElementById("push-off");
  const cfg = root.dataset;

  function say(text) {
    status.textContent = text;
  }

  function show(subscribed) {
    say(subscribed ? cfg.msgOn : cfg.msgOff);
    onButton.hidden = subscribed;
    offButton.hidden = !subscribed;
  }

  function keyBytes(base64url) {
    const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function sameKey(subscription, key) {
    const given = subscription.options && subscription.options.applicationServerKey;
    if (!given) {
      return true;
    }
    const a = new Uint8Array(given);
    return a.length === key.length && a.every((byte, i) => byte === key[i]);
  }

  async function post(url, fields) {
    const body = new URLSearchParams(Object.assign({ csrf_token: cfg.csrf }, fields));
    const response = await fetch(url, { method: "POST", body: body, credentials: "same-origin" });
    if (!response.ok) {
      throw new Error("HTTP " + response.status);
    }
  }

  async function publicKey() {
    const response = await fetch(cfg.keyUrl, { credentials: "same-origin" });
    if (!response.ok) {
      throw new Error("HTTP " + response.status);
    }
    return keyBytes((await response.json()).publicKey);
  }

  async function subscribe(registration, key) {
    const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    await post(cfg.subscribeUrl, { subscription: JSON.stringify(subscription) });
  }

  async function start() {
    if (!window.isSecureContext) {
      say(cfg.msgInsecure);
      return;
    }
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      say(cfg.msgUnsupported);
      return;
    }
    const registration = await navigator.serviceWorker.register(cfg.workerUrl, { scope: "/" });
    const key = await publicKey();
    let current = await registration.pushManager.getSubscription();
    if (current && !sameKey(current, key)) {
      // The appliance's key changed (a new box, a restored backup): the old subscription cannot work.
      await post(cfg.unsubscribeUrl, { endpoint: current.endpoint });
      await current.unsubscribe();
      current = null;
    }
    if (current && Notification.permission === "granted") {
      // Send it again: the appliance may have removed it, and the row learns this page's language.
      await post(cfg.subscribeUrl, { subscription: JSON.stringify(current) });
    }
    show(Boolean(current));

    onButton.addEventListener("click", async () => {
      say(cfg.msgWorking);
      try {
        if ((await Notification.requestPermission()) !== "granted") {
          say(cfg.msgDenied);
          return;
        }
        await subscribe(registration, key);
        show(true);
      } catch (error) {
        say(cfg.msgFailed);
      }
    });
    offButton.addEventListener("click", async () => {
      say(cfg.msgWorking);
      try {
        const subscription = await registration.pushManager.getSubscription();
        if (subscription) {
          await post(cfg.unsubscribeUrl, { endpoint: subscription.endpoint });
          await subscription.unsubscribe();
        }
        show(false);
      } catch (error) {
        say(cfg.msgFailed);
      }
    });
  }

  start().catch(() => say(cfg.msgFailed));
})();
