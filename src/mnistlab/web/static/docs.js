"use strict";
// Starts Swagger UI on /docs for this server's OpenAPI schema. A file of its own, not an inline
// script, so that the docs page's Content-Security-Policy can forbid inline scripts.
// URLs are relative to /docs, so the page also works below a --root-path.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the default validator is a web service elsewhere
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
