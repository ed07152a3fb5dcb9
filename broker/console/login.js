// The login page is served again with 401 after a wrong password: say so.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav && nav.responseStatus === 401) {
    const msg = document.getElementById("login-error");
    msg.textContent = "Wrong user name or password.";
    msg.hidden = false;
  }
});
