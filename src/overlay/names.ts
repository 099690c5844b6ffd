/**
 * tinc 1.0 node names allow only letters, digits and "_"; meshplane host
 * names are DNS labels (letters, digits, "-"), so "-" becomes "_". Host
 * names cannot contain "_", so no two hosts map to one node name.
 */
export function tincNodeName(host: string): string {
  return host.replace(/-/g, '_');
}
