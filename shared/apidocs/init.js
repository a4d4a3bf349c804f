// Swagger UI for the app's own document. A file of its own (not an inline script) so the page's
// Content-Security-Policy can allow scripts from the app only. validatorUrl: null keeps Swagger UI
// from sending the document to a public validator.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    tryItOutEnabled: true,
    persistAuthorization: false,
  });
});
