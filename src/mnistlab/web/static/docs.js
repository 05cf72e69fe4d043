"use strict";
// Starts Swagger UI on /docs for this server's OpenAPI schema. A file of its own, not an inline
// script, so that the docs page's Content-Security-Policy can forbid inline scripts.
// URLs are relative to /docs, so the page also works below a --root-path.
window.addEventListener("DOMContentLoaded", () => {
  const options = {
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the default validator is a web service elsewhere
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  };
  // Behind a proxy that serves the app below a prefix it strips (/mnist/docs reaching the server as
  // /docs), the schema names no servers, and "Try it out" went to /api/... at the site's root: the
  // folder /docs is served from is where the API is.
  const folder = new URL(".", window.location.href).pathname.replace(/\/$/, "");
  fetch("openapi.json")
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .then((spec) => {
      if (!spec.servers && folder) spec.servers = [{ url: folder }];
      window.ui = SwaggerUIBundle({ ...options, spec });
    })
    .catch(() => {
      window.ui = SwaggerUIBundle({ ...options, url: "openapi.json" }); // Swagger UI says what went wrong
    });
});
