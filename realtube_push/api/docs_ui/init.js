// Starts Swagger UI on this server's OpenAPI document. Nothing is loaded from elsewhere:
// the online validator badge is off (validatorUrl: null).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
