// Debian's Chromium for the browser tests: where it is, and the flags that keep it
// headless, offline (nothing reachable but 127.0.0.1) and able to use WebRTC over
// loopback with plain IP candidates.

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export const CHROMIUM_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  // WebRTC between two connections of the page over loopback, with plain IP candidates
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  // loopback candidates come only with a media permission: a fake device, granted
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  // offline: nothing resolves but 127.0.0.1, and anything else is sent to a dead proxy
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  "--proxy-server=127.0.0.1:9",
  "--proxy-bypass-list=127.0.0.1",
  "--no-first-run",
  "--no-default-browser-check",
  "--no-pings",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--disable-breakpad",
  "--metrics-recording-only",
  "--disable-gpu",
];
