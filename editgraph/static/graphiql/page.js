// editgraph's GraphiQL page: the page's only script of its own, a file rather than inline so
// that the page's Content-Security-Policy admits no inline script (editgraph/graphiql.py).
// React, ReactDOM, GraphiQL and GraphiQLPluginExplorer are loaded before it (all deferred).
"use strict";

(function () {
  const EXAMPLE_QUERY = `# editgraph's GraphiQL
#
# Put your token in the Headers tab below:
#
#     {"Authorization": "Bearer eg_…"}
#
# It is sent with every query and mutation, and as the websocket's
# connection_init payload for subscriptions. Then run (Ctrl-Enter):

{
  me {
    name
  }
}
`;

  // The editor's query and variables live in the URL, so a link shares them. Headers do not:
  // they hold a token.
  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(entry.slice(eq + 1));
    }
  }

  function updateURL(data) {
    Object.assign(parameters, data);
    const search = Object.keys(parameters)
      .filter((key) => Boolean(parameters[key]))
      .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
      .join("&");
    history.replaceState(null, "", "?" + search);
  }

  // The page is served by /graphql itself: operations go back to it, subscriptions over a
  // websocket to the same place.
  const fetchURL = window.location.href.split(/[?#]/)[0];
  const subscriptionURL = new URL(fetchURL);
  subscriptionURL.protocol = subscriptionURL.protocol === "https:" ? "wss:" : "ws:";

  function authorization(headers) {
    const name = Object.keys(headers).find((key) => key.toLowerCase() === "authorization");
    return name === undefined ? undefined : headers[name];
  }

  // GraphiQL chooses the websocket for a subscription from its parse of the editor, which it
  // makes 100 ms after the last change: a subscription run sooner (pasted, then Ctrl-Enter)
  // would go by POST, and fail there. The operation sent is parsed here instead.
  function parsed(graphQLParams, opts) {
    try {
      return Object.assign({}, opts, { documentAST: GraphiQL.GraphQL.parse(graphQLParams.query) });
    } catch (error) {
      return opts; // not GraphQL: the server says what is wrong with it
    }
  }

  // GraphiQL sends the Headers tab with HTTP requests only. This fetcher also passes its
  // Authorization header as the websocket's connection_init payload, which is how the server
  // authenticates a subscription.
  const defaultHeaders = {};
  const fetcher = (graphQLParams, opts) => {
    const headers = Object.assign({}, defaultHeaders, (opts && opts.headers) || {});
    const auth = authorization(headers);
    return GraphiQL.createFetcher({
      url: fetchURL,
      headers: defaultHeaders,
      subscriptionUrl: subscriptionURL.toString(),
      wsConnectionParams: auth ? { authorization: auth } : {},
    })(graphQLParams, parsed(graphQLParams, opts));
  };

  const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

  function GraphiQLWithExplorer() {
    const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(undefined);

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorerPlugin],
      query: query,
      variables: variables,
      headers: headers,
      onEditQuery: (value) => {
        setQuery(value);
        updateURL({ q: value });
      },
      onEditVariables: (value) => {
        setVariables(value);
        updateURL({ variables: value });
      },
      onEditHeaders: setHeaders,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      // The Headers tab holds a bearer token: kept for this page only, never in storage.
      shouldPersistHeaders: false,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQLWithExplorer),
  );
})();
